"""Third-party code copied into edgecls unchanged (see README.md in this folder for origins and licences)."""
