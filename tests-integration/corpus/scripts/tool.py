"""A script outside any package: module `scripts.tool` from its path."""


def cli():
    return "tool"


if __name__ == "__main__":
    cli()
