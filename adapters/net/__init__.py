"""What the HTTP adapters share (the webhook and feed sources, reply delivery): the guard on
outbound addresses and Unsilo's request signature. Adapters never import each other; they
may import this."""
