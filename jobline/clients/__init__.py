"""The clients of the HTTP API: the Python client and the ``jobline`` commands that use it.

They speak HTTP only, so they import nothing of the server's side.
"""
