"""HTTP plumbing: the uvicorn server, readiness and metrics responses, the body limit."""
