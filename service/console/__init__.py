"""The web console: server-rendered pages of decisions, lineage, experiments and KPIs, for people to look at."""
