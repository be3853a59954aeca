"""Reducers: one module per family of objects, each turning an object into a
pickle reduce tuple that prefers standard-library callables."""
