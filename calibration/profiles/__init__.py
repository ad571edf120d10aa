"""Shipped calibration profiles (data only: one directory of CSV tables + metadata.json each)."""
