"""Configuration: typed settings from the environment and config files as code."""
