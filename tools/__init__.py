"""Developer and operator tools that run outside the function app."""
