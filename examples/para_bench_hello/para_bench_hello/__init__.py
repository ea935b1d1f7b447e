"""An example para-bench agent package (see README: "Writing an agent package")."""
