"""The driver's own machine: a local Ray, the kept-alive cluster, a quiet and quick exit.

- :mod:`~raygrid.local.connect`: which Ray a search runs on; starting a local one.
- :mod:`~raygrid.local.kept_alive`: ``raygrid up``'s cluster, found and leased by scripts.
- :mod:`~raygrid.local.teardown`: stopping a local Ray that raygrid started, promptly.
- :mod:`~raygrid.local.quiet`: workers that print only what the user's fits print.
- :mod:`~raygrid.local.shipping`: the user's local modules shipped to workers by value.
- :mod:`~raygrid.local.ray_private`: the one place Ray's private APIs are called from.
"""
