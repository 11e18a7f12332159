"""Replies delivered back to where the customer wrote: signed POSTs to a source's reply endpoint."""
