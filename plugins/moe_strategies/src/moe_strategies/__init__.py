"""Strategies over several experts: race them, concatenate, chain reasoning into execution,
escalate by cascade, mix agents; and the scorers a cascade consults."""
