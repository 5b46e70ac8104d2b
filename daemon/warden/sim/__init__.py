"""Simulators of the platforms Warden controls, with fault injection (tests and `warden demo`)."""
