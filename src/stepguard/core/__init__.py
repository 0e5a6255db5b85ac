"""The pure core: domain types and rules. No I/O, no clock or randomness reads, no frameworks."""
