"""Player re-identification for team sports: the shared package behind the stage scripts."""
