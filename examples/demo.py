"""Placeholder demo: replace with a real marinade demo."""

import marinade

square = lambda x: x * x  # noqa: E731
data = marinade.dumps(square)
print("payload bytes:", len(data))
print("square(7) after round trip:", marinade.loads(data)(7))
