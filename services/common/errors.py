"""Errors shared by all services."""


class ConfigError(Exception):
    """Start-up configuration is invalid. The message names the environment variable(s) at fault;
    the service prints it and exits with status 2 instead of crash-looping on a bad value."""
