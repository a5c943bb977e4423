"""The clerk's kiosk UI, served by the terminal agent on localhost. Imports only
the agent's public service API."""
