"""The derived columnar event and exposure log beside the store, and the experiment KPIs computed from it."""
