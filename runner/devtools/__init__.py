"""Developer tooling of the project (generated docs); not used by the product at run time."""
