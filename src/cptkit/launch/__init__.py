"""Cluster launchers: profiles (`launch/*.yaml`) → job scripts for SLURM, PBS Pro, Grid Engine or this machine.

Login-node code: nothing in this package imports torch, megatron-core or transformers.
"""
