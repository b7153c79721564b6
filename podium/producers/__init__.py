"""producers (see DESIGN.md, Components and their homes)."""
