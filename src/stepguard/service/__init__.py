"""Use cases: the core's rules applied to stored state, through ports. No framework here."""
