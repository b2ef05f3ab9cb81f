//! Network coordinates: `/v1/coordinate/datacenters`, `/nodes`, `/node/{node}` and
//! `PUT /v1/coordinate/update`, with the estimated round trip between two of them.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::{Client, Error, QueryMeta, QueryOptions};

pub use tribune_types::model::coordinate::Coordinate;

/// A node's coordinate in one network segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CoordinateEntry {
    /// Node name.
    pub node: String,
    /// Network segment ("" by default).
    #[serde(default)]
    pub segment: String,
    /// The coordinate.
    pub coord: Coordinate,
}

/// The servers of one datacenter and their WAN coordinates.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DatacenterMap {
    /// Datacenter.
    pub datacenter: String,
    /// Network area (`WAN`).
    #[serde(rename = "AreaID")]
    pub area_id: String,
    /// Each server's name and coordinate.
    #[serde(default, deserialize_with = "crate::serde_util::null_default")]
    pub coordinates: Vec<CoordinateEntry>,
}

/// The `/v1/coordinate` endpoints. Obtained from [`Client::coordinate`].
#[derive(Clone, Copy, Debug)]
pub struct Coordinates<'a> {
    client: &'a Client,
}

impl<'a> Coordinates<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Coordinates { client }
    }

    /// Servers' WAN coordinates by datacenter.
    pub async fn datacenters(&self) -> Result<Vec<DatacenterMap>, Error> {
        let (maps, _) = self
            .client
            .get_json::<Option<Vec<DatacenterMap>>>(
                "/v1/coordinate/datacenters",
                &QueryOptions::default(),
                &[],
            )
            .await?;
        Ok(maps.unwrap_or_default())
    }

    /// Every node's LAN coordinates (blocking per `opts`).
    pub async fn nodes(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<CoordinateEntry>, QueryMeta), Error> {
        let (list, meta) = self
            .client
            .get_json::<Option<Vec<CoordinateEntry>>>("/v1/coordinate/nodes", opts, &[])
            .await?;
        Ok((list.unwrap_or_default(), meta))
    }

    /// One node's coordinates, one per segment; empty when it has none yet.
    pub async fn node(
        &self,
        node: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<CoordinateEntry>, QueryMeta), Error> {
        let path = format!("/v1/coordinate/node/{}", crate::escape_segment(node));
        let (list, meta) = self
            .client
            .get_json_opt::<Vec<CoordinateEntry>>(&path, opts, &[])
            .await?;
        Ok((list.unwrap_or_default(), meta))
    }

    /// Stores a node's coordinate (the node must be in the catalog).
    pub async fn update(&self, entry: &CoordinateEntry) -> Result<(), Error> {
        let req = self
            .client
            .request(Method::PUT, "/v1/coordinate/update", None, None)
            .json(entry);
        self.client.write_unit(req).await
    }
}
