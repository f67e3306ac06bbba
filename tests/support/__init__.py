"""Reusable plumbing for tests that use real sockets, TLS, proxies and outside peers.

``procs`` runs peer programs (READY handshake, timeouts, no leaked processes), ``certs``
makes a throwaway PKI with trustme, ``proxy`` runs a real HTTP CONNECT proxy, ``node``
drives the Node.js peers in ``tests/peers/`` and ``peers`` the Python ``websockets`` ones.
``fixtures`` wraps them as pytest fixtures; see ``docs/testing.md``.
"""
