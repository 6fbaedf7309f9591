"""Measuring the verification pipeline on labelled face pairs (LFW)."""
