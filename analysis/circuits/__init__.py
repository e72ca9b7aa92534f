"""Circuits: attribution patching, edge attribution (EAP, EAP-IG), path patching and the chosen circuit."""
