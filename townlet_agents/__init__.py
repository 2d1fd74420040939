"""Townlet trainer: a recurrent, masked, value-based learner for the Townlet environment."""
