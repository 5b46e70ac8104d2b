"""The schema's revisions, oldest first (a package so that they ship in wheels)."""
