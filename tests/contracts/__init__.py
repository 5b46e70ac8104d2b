"""JSON Schemas of the platforms' request and response bodies, written by hand from the seeds."""
