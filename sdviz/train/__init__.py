"""Training of the embedded model and of the from-scratch autoencoders."""
