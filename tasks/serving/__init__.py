"""The HTTP service of the champion (`modelmill serve`): the alias follower and the FastAPI app."""
