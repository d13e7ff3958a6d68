"""Image generator families: image/dcgan, image/vae, image/ddpm (see each module)."""
