"""One module per external format: raw artefacts to normalized tables (see ``tables``)."""
