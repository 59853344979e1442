"""Primitives every layer may use: settings-independent errors, events, logging, security, time."""
