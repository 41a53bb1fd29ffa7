import Foundation

/// The OpenAPI 3.1 description of the API, served at /openapi.json (docs/API.md explains it):
/// the source of the routes. The server registers exactly the operations listed here, each by its
/// `operationId` (`Routes.handlers`), so the document and the routes cannot drift apart;
/// schemathesis checks live responses against its schemas in CI (scripts/api-check.sh).
enum OpenAPIDocument {
    /// The document, with the source pattern the API checks (`SourcePattern`) filled in.
    static let json = [
        ("@URL_PATTERN@", SourcePattern.source), ("@FILENAME_PATTERN@", SourcePattern.filename),
        ("@WORKFLOW_NAME_PATTERN@", SourcePattern.workflowName), ("@FOLDER_PATTERN@", SourcePattern.folder),
        ("^$|@FOLDER_PATTERN_BODY@", "^$|" + SourcePattern.folder),
    ].reduce(template) { text, slot in text.replacingOccurrences(of: slot.0, with: SourcePattern.jsonEscaped(slot.1)) }

    private static let template = #"""
{
 "openapi": "3.1.0",
 "info": {
  "title": "tensors local API",
  "version": "1",
  "description": "The model library, workflow checks and downloads of a tensors home. Loopback only unless a bearer token is set; keys sent with a request are used for it and never stored. Errors are {\"error\": message}. docs/API.md has examples."
 },
 "components": {
  "securitySchemes": {
   "bearer": {
    "type": "http",
    "scheme": "bearer",
    "description": "Required when the API listens beyond loopback (TSR_API_TOKEN)."
   }
  },
  "schemas": {
   "Error": {
    "type": "object",
    "required": [
     "error"
    ],
    "properties": {
     "error": {
      "type": "string"
     },
     "requires_auth": {
      "type": "string",
      "enum": [
       "huggingface",
       "civitai"
      ]
     }
    }
   },
   "AliasName": {
    "type": "object",
    "properties": {
     "folder": {
      "type": "string"
     },
     "path": {
      "type": "string"
     }
    }
   },
   "ModelSummary": {
    "type": "object",
    "properties": {
     "sha256": {
      "type": "string"
     },
     "size": {
      "type": "integer"
     },
     "state": {
      "type": "string",
      "enum": [
       "present",
       "remote",
       "quarantined"
      ]
     },
     "download_error": {
      "type": "string",
      "description": "For a remote model whose last download failed: why, and when the mount tries again (reads answer EIO until then)."
     },
     "base_model": {
      "type": "string"
     },
     "creator": {
      "type": [
       "string",
       "null"
      ]
     },
     "civitai_name": {
      "type": [
       "string",
       "null"
      ]
     },
     "civitai_model_id": {
      "type": [
       "integer",
       "null"
      ]
     },
     "names": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/AliasName"
      }
     },
     "pinned": {
      "type": "boolean",
      "description": "Never evicted from the bounded cache (tsr pin)."
     }
    }
   },
   "ModelList": {
    "type": "object",
    "properties": {
     "total": {
      "type": "integer"
     },
     "offset": {
      "type": "integer"
     },
     "models": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/ModelSummary"
      }
     },
     "facets": {
      "type": "object",
      "properties": {
       "folders": {
        "type": "object",
        "additionalProperties": {
         "type": "integer"
        }
       },
       "base_models": {
        "type": "object",
        "additionalProperties": {
         "type": "integer"
        }
       },
       "creators": {
        "type": "object",
        "additionalProperties": {
         "type": "integer"
        }
       }
      }
     }
    }
   },
   "ModelDetail": {
    "type": "object",
    "properties": {
     "sha256": {
      "type": "string"
     },
     "size": {
      "type": "integer"
     },
     "state": {
      "type": "string"
     },
     "download_error": {
      "type": "string"
     },
     "base_model": {
      "type": "string"
     },
     "names": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/AliasName"
      }
     },
     "tensor_count": {
      "type": [
       "integer",
       "null"
      ]
     },
     "header_size": {
      "type": [
       "integer",
       "null"
      ]
     },
     "metadata": {
      "type": "object",
      "additionalProperties": {
       "type": "string"
      }
     },
     "sources": {
      "type": "array",
      "items": {
       "type": "object",
       "properties": {
        "url": {
         "type": "string"
        },
        "kind": {
         "type": "string"
        }
       }
      }
     },
     "civitai": {
      "type": [
       "object",
       "null"
      ],
      "properties": {
       "model_id": {
        "type": "integer"
       },
       "version_id": {
        "type": "integer"
       },
       "model_name": {
        "type": "string"
       },
       "version_name": {
        "type": "string"
       },
       "type": {
        "type": "string"
       },
       "base_model": {
        "type": [
         "string",
         "null"
        ]
       },
       "creator": {
        "type": [
         "string",
         "null"
        ]
       },
       "newest_version_id": {
        "type": "integer",
        "description": "the newest version of the model the CivitAI cache lists"
       },
       "newest_version_name": {
        "type": "string"
       },
       "update_available": {
        "type": "boolean",
        "description": "a newer version exists and none of its files is in the library (tsr update fetches it)"
       }
      }
     },
     "trigger_words": {
      "type": "array",
      "items": {
       "type": "string"
      }
     },
     "example_prompts": {
      "type": "array",
      "items": {
       "type": "object",
       "properties": {
        "image_url": {
         "type": [
          "string",
          "null"
         ]
        },
        "params": {
         "type": "object",
         "additionalProperties": {
          "type": "string"
         }
        },
        "resources": {
         "type": "array",
         "items": {
          "type": "object"
         }
        }
       }
      }
     },
     "pinned": {
      "type": "boolean",
      "description": "Never evicted from the bounded cache (tsr pin)."
     }
    }
   },
   "Stats": {
    "type": "object",
    "properties": {
     "home": {
      "type": "string"
     },
     "blobs": {
      "type": "integer"
     },
     "remote_blobs": {
      "type": "integer"
     },
     "quarantined_blobs": {
      "type": "integer"
     },
     "aliases": {
      "type": "integer"
     },
     "bytes_stored": {
      "type": "integer"
     },
     "bytes_saved": {
      "type": "integer"
     },
     "workflows": {
      "type": "integer"
     },
     "downloads_active": {
      "type": "integer"
     },
     "folders": {
      "type": "array",
      "items": {
       "type": "object"
      }
     }
    }
   },
   "Dependency": {
    "type": "object",
    "required": [
     "filename"
    ],
    "properties": {
     "filename": {
      "type": "string"
     },
     "sha256": {
      "type": [
       "string",
       "null"
      ],
      "pattern": "^[0-9a-fA-F]{64}$"
     },
     "size": {
      "type": [
       "integer",
       "null"
      ],
      "minimum": 0,
      "maximum": 9007199254740991
     },
     "urls": {
      "type": [
       "array",
       "null"
      ],
      "items": {
       "type": "string"
      }
     },
     "display_name": {
      "type": [
       "string",
       "null"
      ]
     },
     "required": {
      "type": [
       "boolean",
       "null"
      ]
     },
     "requires_auth": {
      "type": [
       "boolean",
       "null"
      ]
     },
     "auth_provider": {
      "type": [
       "string",
       "null"
      ],
      "enum": [
       "huggingface",
       "civitai",
       null
      ]
     }
    }
   },
   "CheckEntry": {
    "type": "object",
    "properties": {
     "folder": {
      "type": "string"
     },
     "filename": {
      "type": "string"
     },
     "sha256": {
      "type": [
       "string",
       "null"
      ]
     },
     "size": {
      "type": [
       "integer",
       "null"
      ]
     },
     "state": {
      "type": "string",
      "enum": [
       "present",
       "remote",
       "unresolved"
      ]
     },
     "action": {
      "type": [
       "string",
       "null"
      ],
      "enum": [
       "use_existing",
       "symlink",
       "download",
       null
      ]
     },
     "url": {
      "type": [
       "string",
       "null"
      ]
     },
     "display_name": {
      "type": [
       "string",
       "null"
      ]
     },
     "required": {
      "type": "boolean"
     },
     "note": {
      "type": [
       "string",
       "null"
      ]
     }
    }
   },
   "Check": {
    "type": "object",
    "properties": {
     "missing": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/CheckEntry"
      }
     },
     "existing": {
      "type": "array",
      "items": {
       "$ref": "#/components/schemas/CheckEntry"
      }
     },
     "total_download_size": {
      "type": "integer"
     },
     "total_saved_size": {
      "type": "integer"
     },
     "problems": {
      "type": "array",
      "items": {
       "type": "object",
       "properties": {
        "entry": {
         "type": "string"
        },
        "message": {
         "type": "string"
        }
       }
      }
     }
    }
   },
   "Download": {
    "type": "object",
    "properties": {
     "id": {
      "type": "integer"
     },
     "file": {
      "type": "string"
     },
     "source": {
      "type": "string"
     },
     "workflow": {
      "type": [
       "string",
       "null"
      ]
     },
     "state": {
      "type": "string",
      "enum": [
       "queued",
       "downloading",
       "completed",
       "failed",
       "cancelled"
      ]
     },
     "bytes": {
      "type": "integer"
     },
     "total_bytes": {
      "type": [
       "integer",
       "null"
      ]
     },
     "speed": {
      "type": "integer",
      "description": "bytes per second"
     },
     "sha256": {
      "type": [
       "string",
       "null"
      ]
     },
     "path": {
      "type": [
       "string",
       "null"
      ]
     },
     "error": {
      "type": [
       "string",
       "null"
      ]
     },
     "requires_auth": {
      "type": "string",
      "enum": [
       "huggingface",
       "civitai"
      ],
      "description": "set when the download failed for want of a key: the service to send one for"
     },
     "started_at": {
      "type": "string",
      "format": "date-time"
     },
     "finished_at": {
      "type": [
       "string",
       "null"
      ],
      "format": "date-time"
     }
    }
   },
   "Workflow": {
    "type": "object",
    "properties": {
     "name": {
      "type": "string"
     },
     "format": {
      "type": "string",
      "enum": [
       "seed",
       "ui",
       "api"
      ]
     },
     "entries": {
      "type": "integer"
     },
     "missing": {
      "type": "integer"
     },
     "total_size": {
      "type": "integer"
     },
     "updated_at": {
      "type": "string",
      "format": "date-time"
     }
    }
   },
   "WorkflowDocument": {
    "anyOf": [
     {
      "type": "object",
      "required": [
       "dependencies"
      ],
      "properties": {
       "dependencies": {
        "type": "object"
       }
      }
     },
     {
      "type": "object",
      "required": [
       "workflow"
      ],
      "properties": {
       "workflow": {
        "type": "object",
        "required": [
         "dependencies"
        ],
        "properties": {
         "dependencies": {
          "type": "object"
         }
        }
       }
      }
     },
     {
      "type": "object",
      "required": [
       "nodes"
      ],
      "properties": {
       "nodes": {
        "type": "array"
       }
      }
     },
     {
      "type": "object",
      "required": [
       "models"
      ],
      "properties": {
       "models": {
        "type": "array"
       }
      }
     },
     {
      "type": "object",
      "required": [
       "definitions"
      ],
      "properties": {
       "definitions": {
        "type": "object"
       }
      }
     },
     {
      "type": "object",
      "minProperties": 1,
      "additionalProperties": {
       "type": "object",
       "required": [
        "class_type"
       ],
       "properties": {
        "class_type": {
         "type": "string"
        }
       }
      }
     }
    ],
    "description": "A workflow in the seed format (dependencies), ComfyUI's UI format (nodes, models, definitions) or its API format ({id: {class_type, inputs}})"
   }
  },
  "parameters": {
   "HuggingfaceToken": {
    "name": "X-Huggingface-Token",
    "in": "header",
    "required": false,
    "description": "Hugging Face token for gated sources; used for this request only, never stored.",
    "schema": {
     "type": "string"
    }
   },
   "CivitaiApiKey": {
    "name": "X-Civitai-Api-Key",
    "in": "header",
    "required": false,
    "description": "CivitAI API key; used for this request only, never stored.",
    "schema": {
     "type": "string"
    }
   },
   "WorkflowName": {
    "name": "name",
    "in": "path",
    "required": true,
    "description": "Workflow name: one path component, no control characters, not . or ..",
    "schema": {
     "type": "string",
     "pattern": "@WORKFLOW_NAME_PATTERN@"
    }
   }
  },
  "responses": {
   "Check": {
    "description": "What is missing and what is here",
    "content": {
     "application/json": {
      "schema": {
       "$ref": "#/components/schemas/Check"
      }
     }
    }
   },
   "NoSuchWorkflow": {
    "description": "No such workflow",
    "content": {
     "application/json": {
      "schema": {
       "$ref": "#/components/schemas/Error"
      }
     }
    }
   }
  }
 },
 "security": [
  {},
  {
   "bearer": []
  }
 ],
 "paths": {
  "/": {
   "get": {
    "operationId": "webPage",
    "summary": "The library web page (HTML, no external assets)",
    "security": [
     {}
    ],
    "responses": {
     "200": {
      "description": "HTML",
      "content": {
       "text/html": {}
      }
     }
    }
   }
  },
  "/openapi.json": {
   "get": {
    "operationId": "openAPIDocument",
    "summary": "This document",
    "security": [
     {}
    ],
    "responses": {
     "200": {
      "description": "OpenAPI 3.1"
     }
    }
   }
  },
  "/stats": {
   "get": {
    "operationId": "getStats",
    "summary": "Blobs, names, bytes stored and saved",
    "responses": {
     "200": {
      "description": "Totals",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Stats"
        }
       }
      }
     }
    }
   }
  },
  "/models": {
   "get": {
    "operationId": "listModels",
    "summary": "Models (one per blob) with their names, filtered",
    "parameters": [
     {
      "name": "folder",
      "in": "query",
      "required": false,
      "description": "A ComfyUI folder key",
      "schema": {
       "type": "string",
       "pattern": "^$|@FOLDER_PATTERN_BODY@"
      }
     },
     {
      "name": "base",
      "in": "query",
      "required": false,
      "description": "Base model, or unknown",
      "schema": {
       "type": "string"
      }
     },
     {
      "name": "creator",
      "in": "query",
      "required": false,
      "description": "CivitAI creator, or unknown",
      "schema": {
       "type": "string"
      }
     },
     {
      "name": "state",
      "in": "query",
      "required": false,
      "description": "present | remote | quarantined (empty: any)",
      "schema": {
       "type": "string",
       "enum": [
        "",
        "present",
        "remote",
        "quarantined"
       ]
      }
     },
     {
      "name": "text",
      "in": "query",
      "required": false,
      "description": "Substring of a name, CivitAI name, creator or base model",
      "schema": {
       "type": "string"
      }
     },
     {
      "name": "limit",
      "in": "query",
      "required": false,
      "description": "1…5000 (200)",
      "schema": {
       "type": "integer",
       "minimum": 1,
       "maximum": 5000,
       "default": 200
      }
     },
     {
      "name": "offset",
      "in": "query",
      "required": false,
      "description": "Models to skip",
      "schema": {
       "type": "integer",
       "minimum": 0,
       "maximum": 9007199254740991,
       "default": 0
      }
     }
    ],
    "responses": {
     "200": {
      "description": "Models and facet counts",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/ModelList"
        }
       }
      }
     },
     "400": {
      "description": "A bad filter",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/models/{sha256}": {
   "get": {
    "operationId": "getModel",
    "summary": "One model: names, header metadata, sources, CivitAI info, trigger words, example prompts",
    "parameters": [
     {
      "name": "sha256",
      "in": "path",
      "required": true,
      "description": "64 hex digits",
      "schema": {
       "type": "string",
       "pattern": "^[0-9a-fA-F]{64}$"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "The model",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/ModelDetail"
        }
       }
      }
     },
     "400": {
      "description": "Not a SHA-256",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "404": {
      "description": "Not in the library",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/models/check-dependencies": {
   "post": {
    "operationId": "checkDependencies",
    "summary": "The seed's dependency check (registry only; nothing stored)",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "type": "object",
        "required": [
         "dependencies"
        ],
        "properties": {
         "dependencies": {
          "type": "object",
          "additionalProperties": {
           "type": "array",
           "items": {
            "$ref": "#/components/schemas/Dependency"
           }
          }
         }
        }
       }
      }
     }
    },
    "responses": {
     "200": {
      "$ref": "#/components/responses/Check"
     },
     "400": {
      "description": "Not a dependencies object",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/models/download": {
   "post": {
    "operationId": "downloadModel",
    "summary": "Download one file (the seed's endpoint): NDJSON progress lines, then a completed or error line",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "type": "object",
        "required": [
         "url"
        ],
        "properties": {
         "url": {
          "type": "string",
          "pattern": "@URL_PATTERN@",
          "description": "hf://ORG/REPO/PATH[@REVISION], civitai:MODEL[@VERSION], or an http(s) URL (a huggingface.co resolve URL, a civitai.com download URL, or any URL on the allowlist: others are answered 403)"
         },
         "folder": {
          "type": [
           "string",
           "null"
          ],
          "pattern": "@FOLDER_PATTERN@"
         },
         "filename": {
          "type": [
           "string",
           "null"
          ],
          "pattern": "@FILENAME_PATTERN@",
          "description": "Path inside the folder: components of up to 255 ASCII characters (63 when one is not ASCII), none . or .., no control characters"
         },
         "sha256": {
          "type": [
           "string",
           "null"
          ],
          "pattern": "^[0-9a-fA-F]{64}$"
         },
         "display_name": {
          "type": [
           "string",
           "null"
          ]
         },
         "huggingface_token": {
          "type": [
           "string",
           "null"
          ],
          "description": "Used for this request only, never stored."
         },
         "civitai_api_key": {
          "type": [
           "string",
           "null"
          ],
          "description": "Used for this request only, never stored."
         }
        }
       }
      }
     }
    },
    "responses": {
     "200": {
      "description": "NDJSON: {status: downloading, bytes, total_bytes, progress, speed, message} lines, then {status: completed, path, sha256} or {status: error, error, requires_auth?}; a source that needs a key is such an error line with requires_auth, not a 403",
      "content": {
       "application/x-ndjson": {}
      }
     },
     "400": {
      "description": "A bad source, folder or name",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "403": {
      "description": "A source the policy refuses (a host not on the allowlist, plain http beyond loopback), or a refused Host or Origin",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/workflows": {
   "get": {
    "operationId": "listWorkflows",
    "summary": "Stored workflows with their counts",
    "responses": {
     "200": {
      "description": "Workflows",
      "content": {
       "application/json": {
        "schema": {
         "type": "object",
         "properties": {
          "workflows": {
           "type": "array",
           "items": {
            "$ref": "#/components/schemas/Workflow"
           }
          }
         }
        }
       }
      }
     }
    }
   },
   "post": {
    "operationId": "addWorkflow",
    "summary": "Store a workflow (seed, ComfyUI UI or API format) and register what it needs; asks the sources for hashes and sizes",
    "parameters": [
     {
      "name": "name",
      "in": "query",
      "required": true,
      "description": "The workflow's name (one path component)",
      "schema": {
       "type": "string",
       "pattern": "@WORKFLOW_NAME_PATTERN@"
      }
     },
     {
      "name": "replace",
      "in": "query",
      "required": false,
      "description": "true to replace one of the same name",
      "schema": {
       "type": "string",
       "enum": [
        "true",
        "false"
       ]
      }
     },
     {
      "$ref": "#/components/parameters/HuggingfaceToken"
     },
     {
      "$ref": "#/components/parameters/CivitaiApiKey"
     }
    ],
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/WorkflowDocument"
       }
      }
     }
    },
    "responses": {
     "201": {
      "description": "Stored; what it needs",
      "content": {
       "application/json": {
        "schema": {
         "type": "object",
         "properties": {
          "name": {
           "type": "string"
          },
          "format": {
           "type": "string"
          },
          "check": {
           "$ref": "#/components/schemas/Check"
          }
         }
        }
       }
      }
     },
     "400": {
      "description": "Not a workflow, or a bad name",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "409": {
      "description": "A workflow of that name exists",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/workflows/check": {
   "post": {
    "operationId": "checkWorkflow",
    "summary": "What a workflow JSON needs; nothing stored. With resolve=true the sources of entries without a hash are asked for digest and size",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/WorkflowDocument"
       }
      }
     }
    },
    "responses": {
     "200": {
      "$ref": "#/components/responses/Check"
     },
     "400": {
      "description": "Not a workflow",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    },
    "parameters": [
     {
      "name": "resolve",
      "in": "query",
      "required": false,
      "description": "true: ask the sources (HEAD / a small range read) for entries without a hash",
      "schema": {
       "type": "string",
       "enum": [
        "true",
        "false"
       ]
      }
     },
     {
      "$ref": "#/components/parameters/HuggingfaceToken"
     },
     {
      "$ref": "#/components/parameters/CivitaiApiKey"
     }
    ]
   }
  },
  "/workflows/{name}/check": {
   "get": {
    "operationId": "checkStoredWorkflow",
    "summary": "What a stored workflow still needs",
    "parameters": [
     {
      "$ref": "#/components/parameters/WorkflowName"
     }
    ],
    "responses": {
     "200": {
      "description": "Check",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Check"
        }
       }
      }
     },
     "404": {
      "$ref": "#/components/responses/NoSuchWorkflow"
     },
     "400": {
      "description": "A bad request (the message names the field)",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/workflows/{name}/pull": {
   "post": {
    "operationId": "pullWorkflow",
    "summary": "Start downloading what a stored workflow needs; follow GET /downloads or its events",
    "parameters": [
     {
      "$ref": "#/components/parameters/WorkflowName"
     }
    ],
    "requestBody": {
     "required": false,
     "content": {
      "application/json": {
       "schema": {
        "type": "object",
        "properties": {
         "huggingface_token": {
          "type": [
           "string",
           "null"
          ],
          "description": "Used for this request only, never stored."
         },
         "civitai_api_key": {
          "type": [
           "string",
           "null"
          ],
          "description": "Used for this request only, never stored."
         }
        }
       }
      }
     }
    },
    "responses": {
     "202": {
      "description": "Downloads started",
      "content": {
       "application/json": {
        "schema": {
         "type": "object",
         "properties": {
          "downloads": {
           "type": "array",
           "items": {
            "$ref": "#/components/schemas/Download"
           }
          },
          "unresolved": {
           "type": "array",
           "items": {
            "type": "string"
           }
          }
         }
        }
       }
      }
     },
     "404": {
      "$ref": "#/components/responses/NoSuchWorkflow"
     },
     "400": {
      "description": "A bad request (the message names the field)",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  },
  "/downloads": {
   "get": {
    "operationId": "listDownloads",
    "summary": "Active and recent downloads (newest first, last 100 finished kept)",
    "responses": {
     "200": {
      "description": "Downloads",
      "content": {
       "application/json": {
        "schema": {
         "type": "object",
         "properties": {
          "downloads": {
           "type": "array",
           "items": {
            "$ref": "#/components/schemas/Download"
           }
          }
         }
        }
       }
      }
     }
    }
   }
  },
  "/downloads/events": {
   "get": {
    "operationId": "downloadEvents",
    "summary": "Server-Sent Events: event download, data a Download; every current one first, then each change",
    "responses": {
     "200": {
      "description": "text/event-stream",
      "content": {
       "text/event-stream": {}
      }
     }
    }
   }
  },
  "/downloads/{id}": {
   "delete": {
    "operationId": "cancelDownload",
    "summary": "Cancel a download (bytes so far are kept for a resume)",
    "parameters": [
     {
      "name": "id",
      "in": "path",
      "required": true,
      "description": "Download id",
      "schema": {
       "type": "integer",
       "minimum": 1,
       "maximum": 9007199254740991
      }
     }
    ],
    "responses": {
     "200": {
      "description": "The download, being cancelled",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Download"
        }
       }
      }
     },
     "404": {
      "description": "No such download",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "409": {
      "description": "It has already ended",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "400": {
      "description": "A bad request (the message names the field)",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     }
    }
   }
  }
 }
}
"""#
}

extension OpenAPIDocument {
    /// One operation of the document: its path template (`/models/{sha256}`), method and id.
    struct Operation: Sendable, Equatable {
        var path: String
        var method: String
        var id: String
        /// The path as the router writes it (`/models/:sha256`).
        var routerPath: String {
            path.split(separator: "/", omittingEmptySubsequences: false).map { segment in
                segment.hasPrefix("{") && segment.hasSuffix("}") ? ":" + segment.dropFirst().dropLast() : segment
            }.joined(separator: "/")
        }
    }

    /// Every operation the document lists, read from it once, in path and method order.
    static let operationList: [Operation] = {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let paths = object["paths"] as? [String: [String: Any]]
        else { return [] }
        return paths.flatMap { path, methods in
            methods.compactMap { method, value -> Operation? in
                guard let id = (value as? [String: Any])?["operationId"] as? String else { return nil }
                return Operation(path: path, method: method.uppercased(), id: id)
            }
        }.sorted { ($0.path, $0.method) < ($1.path, $1.method) }
    }()

    /// The methods the document lists for each path template: a request for a known path with
    /// another method is answered 405 with `Allow`.
    static let operations: [(segments: [Substring], methods: [String])] = Dictionary(grouping: operationList, by: \.path).map { path, list in
        (path.split(separator: "/", omittingEmptySubsequences: false), list.map(\.method).sorted())
    }

    /// The methods allowed on `path` when the document knows it, else nil. A literal path
    /// (`/downloads/events`) wins over a template that also matches it (`/downloads/{id}`), as
    /// in the router.
    static func allowedMethods(forPath path: String) -> [String]? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        var best: (templates: Int, methods: [String])?
        for operation in operations where operation.segments.count == segments.count {
            var templates = 0
            let matches = zip(operation.segments, segments).allSatisfy { template, given in
                guard template.hasPrefix("{") && template.hasSuffix("}") else { return template == given }
                templates += 1
                return !given.isEmpty
            }
            if matches, templates < best?.templates ?? Int.max { best = (templates, operation.methods) }
        }
        return best?.methods
    }
}
