"""Policies as data: ordered rules from YAML, validated and compiled once."""
