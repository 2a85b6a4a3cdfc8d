"""vein2vein: chain of identity and chain of custody for autologous CAR-T cell therapy."""
