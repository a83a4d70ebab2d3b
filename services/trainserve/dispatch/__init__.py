"""The dispatcher: turns queued jobs into Ray work and deploy requests into Serve state."""
