"""Run as `python -m shop`: the module is still `shop.__main__`, from the path."""


def main():
    return 0


if __name__ == "__main__":
    main()
