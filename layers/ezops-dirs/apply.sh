#!/usr/bin/env bash
# service: installed services; package: install packages; backup: backups; shell: admin scripts.
ez_mkdir /ezops/service /ezops/package /ezops/backup /ezops/shell
