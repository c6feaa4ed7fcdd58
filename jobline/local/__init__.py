"""The local stack: embedded servers (redis-server, SecantusDB) and ``jobline up``.

Starts processes; imports the core only, never the parts it starts.
"""
