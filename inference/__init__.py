"""A trained network on a user's own videos: ``classify``, ``features`` and ``export``.

The top of the one-way data flow: it reads checkpoints (``lightning_modules``), networks
(``models``), the data's decoding, sampling and test views (``datamodules``) and the flow
engine (``flow``); nothing below imports it. ``cli.py classify|features|export`` run the
``main(argv) -> int`` of ``inference/<command>.py``.
"""
