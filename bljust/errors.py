"""Errors a user can cause (paths, configs, manifests, checkpoints): the commands print them as one
line naming the offending thing. Anything else is a bug and keeps its traceback."""


class UserError(Exception):
    """Base of every error whose message is meant for the user, not the developer."""
