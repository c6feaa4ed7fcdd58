"""The core leaves: settings, errors and ids, and how every process logs.

Imports nothing else of jobline; everything else may import it.
"""
