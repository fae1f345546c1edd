"""Broker adapters behind one ``Broker`` port: the built-in paper broker and Alpaca.

They arrive with the orders capability; nothing here is wired into the server yet.
"""
