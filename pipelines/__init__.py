"""The KFP pipeline, its components, and the compile / submit commands."""
