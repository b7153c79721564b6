"""adapters (see DESIGN.md, Components and their homes)."""
