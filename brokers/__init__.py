"""Broker adapters behind one ``Broker`` port (``brokers.port``): the built-in paper
broker (``brokers.paper``, pure) and, later, Alpaca.
"""
