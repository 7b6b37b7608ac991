"""Data the course makes itself: synthetic tasks (``synthetic``), and the generated corpora
of later notebooks (``translation``, ``stories``). Everything is seeded and offline."""
