"""The storage contract suite (a package, so its helper modules import as ``storage.*``)."""
