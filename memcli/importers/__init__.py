"""Other tools' formats, read into memcli's own shapes: chat exports (ChatGPT, Claude), note vaults
(Obsidian/Logseq wikilinks and aliases), Org-mode and HTML.

Pure functions over text, at the same layer as ``memcli.text``: the ingest service reads the files,
calls these, and applies what they return. Parsers of other formats (orgparse, selectolax) are
imported inside the functions that need them, so ``import memcli.cli`` never pays for them.
"""
