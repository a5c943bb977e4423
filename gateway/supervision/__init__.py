"""Supervision: the violation rules and their sweeps, cases on the grid, the
upstream feed to the province and the fleet's status. Stands on `store`,
`ingest` and `enforcement`."""
