"""The seven steps as plain functions of paths and a Recipe; KFP components only call these."""
