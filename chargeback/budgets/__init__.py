"""Budgets: month-to-date spend priced as the report prices it, forecasts, alerts and suspension."""
